"""Card topics (``source.topic``): stable codes EHRs key overrides on (docs/clinical/RULES.md R-TOPIC-1). Never rename.

One table: each topic's code, its display and its indicator. The indicator is the topic's usual one; R-TOPIC-1
names the two exceptions, which the card builders apply: an extension within the calf is a warning (critical
only into the proximal veins), and serial imaging offered on an order check is info.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

TOPIC_SYSTEM = "urn:distal-dvt-cds:card-topic"

Indicator = Literal["info", "warning", "critical"]


class Topic(StrEnum):
    ANTICOAGULATE = "distal-dvt-anticoagulate"
    SERIAL_IMAGING = "distal-dvt-serial-imaging"
    SHARED_DECISION = "distal-dvt-shared-decision"
    EXTENSION = "distal-dvt-extension"
    SURVEILLANCE_GAP = "distal-dvt-surveillance-gap"
    BILATERAL_SURVEILLANCE = "distal-dvt-bilateral-surveillance"
    PROXIMAL_DVT = "proximal-dvt"
    LOCATION_UNKNOWN = "dvt-location-unknown"
    PREGNANCY_ANTICOAGULANT = "pregnancy-anticoagulant"
    ANTICOAGULATION_DURATION = "anticoagulation-duration"
    ANTICOAGULANT_CAUTION = "anticoagulant-caution"
    LIMITED_COMPRESSION_ULTRASOUND = "limited-compression-ultrasound"
    DRAFT_ORDER_NOT_CHECKED = "draft-order-not-checked"


@dataclass(frozen=True)
class TopicRow:
    topic: Topic
    display: str
    indicator: Indicator


TOPIC_TABLE: tuple[TopicRow, ...] = (
    TopicRow(Topic.ANTICOAGULATE, "Distal DVT: anticoagulation recommended", "warning"),
    TopicRow(Topic.SERIAL_IMAGING, "Distal DVT: serial duplex imaging recommended", "warning"),
    TopicRow(Topic.SHARED_DECISION, "Distal DVT: anticoagulation or serial imaging (shared decision)", "warning"),
    TopicRow(Topic.EXTENSION, "Distal DVT extended on repeat imaging", "warning"),
    TopicRow(Topic.SURVEILLANCE_GAP, "Distal DVT without anticoagulation or repeat imaging", "critical"),
    TopicRow(Topic.BILATERAL_SURVEILLANCE, "Muscular calf vein thrombosis: other leg not imaged", "info"),
    TopicRow(Topic.PROXIMAL_DVT, "Proximal DVT not anticoagulated", "critical"),
    TopicRow(Topic.LOCATION_UNKNOWN, "DVT with undocumented veins", "info"),
    TopicRow(Topic.PREGNANCY_ANTICOAGULANT, "Warfarin or DOAC drafted in pregnancy", "critical"),
    TopicRow(Topic.ANTICOAGULATION_DURATION, "Anticoagulation duration differs from the recommendation", "info"),
    TopicRow(Topic.ANTICOAGULANT_CAUTION, "Caution with the drafted anticoagulant", "warning"),
    TopicRow(Topic.LIMITED_COMPRESSION_ULTRASOUND, "Limited venous ultrasound may miss calf DVT", "warning"),
    TopicRow(Topic.DRAFT_ORDER_NOT_CHECKED, "A drafted order could not be read, so it was not checked", "warning"),
)
TOPICS: dict[Topic, TopicRow] = {row.topic: row for row in TOPIC_TABLE}
TOPIC_DISPLAY: dict[Topic, str] = {row.topic: row.display for row in TOPIC_TABLE}
INDICATOR: dict[Topic, Indicator] = {row.topic: row.indicator for row in TOPIC_TABLE}

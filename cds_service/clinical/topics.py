"""Card topics (``source.topic``): stable codes EHRs key overrides on (KNOWLEDGE.md §5). Never rename."""

from __future__ import annotations

from enum import StrEnum

TOPIC_SYSTEM = "urn:distal-dvt-cds:card-topic"


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


TOPIC_DISPLAY = {
    Topic.ANTICOAGULATE: "Distal DVT: anticoagulation recommended",
    Topic.SERIAL_IMAGING: "Distal DVT: serial duplex imaging recommended",
    Topic.SHARED_DECISION: "Distal DVT: anticoagulation or serial imaging (shared decision)",
    Topic.EXTENSION: "Distal DVT extended on repeat imaging",
    Topic.SURVEILLANCE_GAP: "Distal DVT without anticoagulation or repeat imaging",
    Topic.BILATERAL_SURVEILLANCE: "Muscular calf vein thrombosis: other leg not imaged",
    Topic.PROXIMAL_DVT: "Proximal DVT not anticoagulated",
    Topic.LOCATION_UNKNOWN: "DVT with undocumented veins",
    Topic.PREGNANCY_ANTICOAGULANT: "Warfarin or DOAC drafted in pregnancy",
    Topic.ANTICOAGULATION_DURATION: "Anticoagulation duration differs from the recommendation",
    Topic.ANTICOAGULANT_CAUTION: "Caution with the drafted anticoagulant",
    Topic.LIMITED_COMPRESSION_ULTRASOUND: "Limited venous ultrasound may miss calf DVT",
    Topic.DRAFT_ORDER_NOT_CHECKED: "A drafted order could not be read, so it was not checked",
}

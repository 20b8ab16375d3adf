"""distal-dvt-cds: an HL7 CDS Hooks 2.0 service for isolated distal (calf) deep vein thrombosis."""

__version__ = "0.1.0"

//! Configuration: node and cluster parts, loaded with figment and validated.

//! Test support shared by integration tests that need network namespaces.

pub mod bridge_lab;

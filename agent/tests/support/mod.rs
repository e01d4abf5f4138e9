//! Test support shared by the integration tests that need network namespaces.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod bridge_lab;
pub mod keepalived_lab;
pub mod netns;

//! Warden control plane.

//! The phone simulator and admin console (being written).

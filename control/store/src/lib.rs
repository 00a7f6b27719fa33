//! Server state, events, sessions, usage and the wake lock: embedded or Redis (issue 3).

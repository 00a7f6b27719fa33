//! The anteroom: holds waiting players in the configuration phase and hands them over with Transfer (issue 4).

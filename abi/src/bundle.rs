//! The boot bundle: see module docs once written.

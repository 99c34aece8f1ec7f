//! The guest library.
#![cfg_attr(not(test), no_std)]

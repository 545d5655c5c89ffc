//! Terminal session recordings: what the hub records is exactly what the user's terminal
//! received (exec output, interactive output with its resizes), `tether replay` plays it back,
//! `tether sessions export` writes an asciicast that `asciinema` accepts, seeking into a large
//! recording does not stream it from the start, and `tether sessions watch` follows a live
//! session without being able to type into it, and a terminal resumed after a drop is one
//! recording; the output search is bounded and a recording is read in windows.
//!
//! One test binary (CI time), a module per concern.

mod common;
mod fail_closed;
mod large;
mod playback;
mod resumed;
mod search;
mod watch;

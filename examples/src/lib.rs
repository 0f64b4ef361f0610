//! Examples of embedding Tower in another Rust service; see `embedded.rs` and run it with
//! `cargo run -p flagtower-examples --example embedded`.

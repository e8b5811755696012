//! The SDK that weir plugin authors depend on: implement a trait, export it
//! with one macro, build for `wasm32-wasip2`.

//! (Filled in by the apiserver work.)

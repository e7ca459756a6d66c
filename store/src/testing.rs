//! The conformance suite every backend must pass. (Filled in by the store work.)

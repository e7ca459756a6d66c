//! (Filled in by the runtime work.)

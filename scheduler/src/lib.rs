//! (Filled in by the scheduler work.)

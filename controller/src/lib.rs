//! (Filled in by the controller work.)

//! (Filled in by the node agent work.)

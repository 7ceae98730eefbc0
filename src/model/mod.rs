//! (module under construction)
pub mod pathnorm;
pub mod routing;

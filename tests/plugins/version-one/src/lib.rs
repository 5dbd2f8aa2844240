const VERSION: &str = "one";
include!("../../version.rs");

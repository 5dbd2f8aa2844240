const VERSION: &str = "two";
include!("../../version.rs");

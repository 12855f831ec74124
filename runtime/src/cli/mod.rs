pub mod inspect;
pub mod run;
pub mod scaffold;
pub mod signals;
pub mod worker;

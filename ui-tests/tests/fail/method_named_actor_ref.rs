pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn actor_ref(&self) -> String {
        "worker".to_string()
    }
}

fn main() {}

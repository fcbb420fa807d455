// `WorkerRef` dereferences to `ActorRef`, whose `name` gives the registered name.
pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn name(&self) -> String {
        "worker".into()
    }
}

fn main() {}

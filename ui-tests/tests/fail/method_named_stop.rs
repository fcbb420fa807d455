// `WorkerRef` dereferences to `ActorRef`, whose `stop` stops the actor: a remote `stop` would
// silently turn `worker.stop()` into a message.
pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn stop(&self) -> bool {
        true
    }
}

fn main() {}

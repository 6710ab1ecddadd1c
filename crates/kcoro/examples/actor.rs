//! An actor: state owned by one coroutine, a bounded mailbox, fire-and-forget `tell` and a
//! request/reply `ask`.
//!
//! ```sh
//! cargo run --release -p kcoro --example actor
//! ```

use kcoro::actor::{self, Actor, ActorOpts, Flow, Reply};

/// A bank account: the balance is touched only by the actor's coroutine.
struct Account {
    balance: i64,
}

enum Msg {
    Deposit(i64),
    Withdraw(i64, Reply<Result<i64, String>>),
    Balance(Reply<i64>),
}

impl Actor for Account {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Deposit(n) => self.balance += n,
            Msg::Withdraw(n, reply) if n > self.balance => {
                reply.send(Err(format!("only {} left", self.balance)))
            }
            Msg::Withdraw(n, reply) => {
                self.balance -= n;
                reply.send(Ok(self.balance));
            }
            Msg::Balance(reply) => reply.send(self.balance),
        }
        Flow::Continue
    }
}

fn main() {
    kcoro::run(|| {
        let account = actor::spawn(Account { balance: 0 }, ActorOpts::mailbox(64));
        let depositors: Vec<_> = (0..10)
            .map(|_| {
                let a = account.clone();
                kcoro::spawn(move || (0..100).for_each(|_| a.tell(Msg::Deposit(1)).unwrap()))
            })
            .collect();
        depositors.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(account.ask(Msg::Balance), Ok(1000));
        assert_eq!(account.ask(|r| Msg::Withdraw(600, r)), Ok(Ok(400)));
        assert_eq!(account.ask(|r| Msg::Withdraw(600, r)), Ok(Err("only 400 left".into())));
        account.stop(); // handles what is queued, then stops
        account.join().unwrap();
        println!("actor: 1000 deposits from 10 coroutines, then withdrawals checked against one balance");
    });
}

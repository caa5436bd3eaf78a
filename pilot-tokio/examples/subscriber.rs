//! The seed's subscriber: connect to the local daemon and print every `tasks.*` event.
//!
//! ```text
//! pilotctl daemon start
//! cargo run -p pilot-tokio --example subscriber            # in one terminal
//! cargo run -p pilot-tokio --example publisher             # in another
//! ```
//!
//! The socket is `$PILOT_SOCKET`, else `$PILOT_HOME/pilot.sock`, else `~/.pilot/pilot.sock`.

use pilot_tokio::Client;

fn socket() -> std::path::PathBuf {
    if let Some(s) = std::env::var_os("PILOT_SOCKET") {
        return s.into();
    }
    let home =
        std::env::var_os("PILOT_HOME").map_or_else(pilot_tokio::config::default_home, Into::into);
    home.join("pilot.sock")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pattern = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tasks.*".to_owned());
    let client = Client::connect(socket()).await?;
    let mut events = client.subscribe(&pattern).await?;
    eprintln!("subscribed to {pattern:?}");
    while let Some(event) = events.next_event().await {
        let event = event?;
        println!(
            "[{}] {}",
            event.topic,
            String::from_utf8_lossy(&event.payload)
        );
    }
    Ok(())
}

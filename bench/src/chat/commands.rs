//! Redis commands a Parley run caused: `INFO commandstats` of the run's own Redis read before
//! and after the load (connects, sends and drain), so a relay's publishes per message are
//! counted by Redis itself, whatever the machine's load.

use std::collections::BTreeMap;

use anyhow::Context;

/// Calls per command (`publish`, `evalsha`, …) since the Redis started.
pub type Calls = BTreeMap<String, u64>;

/// `INFO commandstats` of the Redis at `url`: calls per command.
pub async fn read(url: &str) -> anyhow::Result<Calls> {
    let client = redis::Client::open(url).context("the run's Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to the run's Redis")?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .context("INFO commandstats")?;
    Ok(parse(&info))
}

/// `cmdstat_publish:calls=12,usec=…` lines → `publish: 12`.
fn parse(info: &str) -> Calls {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// One line: the commands called between `before` and `after`, most first, and PUBLISH per
/// message sent.
pub fn line(before: &Calls, after: &Calls, sent: u64) -> String {
    let mut calls: Vec<(&str, u64)> = after
        .iter()
        .map(|(name, n)| {
            (
                name.as_str(),
                n - before.get(name).copied().unwrap_or(0).min(*n),
            )
        })
        .filter(|(name, n)| *n > 0 && *name != "info")
        .collect();
    calls.sort_by_key(|call| std::cmp::Reverse(call.1));
    let publish = calls
        .iter()
        .find(|(name, _)| *name == "publish")
        .map_or(0, |(_, n)| *n);
    let listed: Vec<String> = calls
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!(
        "Redis commands during the run: {}; PUBLISH per message sent {:.2}",
        listed.join(", "),
        publish as f64 / sent.max(1) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_are_read_as_calls_per_command() {
        let info = "# Commandstats\r\ncmdstat_publish:calls=12,usec=30,usec_per_call=2.50\r\ncmdstat_ping:calls=3,usec=1\r\n";
        let calls = parse(info);
        assert_eq!(calls.get("publish"), Some(&12));
        assert_eq!(calls.get("ping"), Some(&3));
        let before = Calls::from([("publish".to_owned(), 2)]);
        assert_eq!(
            line(&before, &calls, 5),
            "Redis commands during the run: publish 10, ping 3; PUBLISH per message sent 2.00"
        );
    }
}

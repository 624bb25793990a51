//! Pod networking: a Linux bridge on the host holding the node's address, and per pod a
//! network namespace joined to the bridge by a veth pair, with an address of its own from the
//! bridge's /16 and a default route through the host. Pods reach each other and the host
//! (API server, S3 store, DNS) over the bridge; two pods can listen on the same port.
//! Configured with iproute2's `ip`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use anyhow::{bail, Context as _};

/// The bridge's own MAC address (locally administered), fixed for its life.
const BRIDGE_MAC: &str = "02:77:65:69:72:01";

/// The pod network.
pub struct Network {
    bridge: String,
    host_ip: Ipv4Addr,
    /// Host-order offsets (from the network address) in use, and the last one handed out.
    used: Mutex<(BTreeSet<u32>, u32)>,
}

/// One pod's attachment: its namespace (under `/run/netns/`) and address.
#[derive(Clone, Debug)]
pub struct PodNet {
    /// Name of the network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Host side of the veth pair.
    veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    offset: u32,
}

async fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Network {
    /// Creates the bridge with `host_ip`/16 (removing a stale one of the same name and the
    /// namespaces a previous agent left, named `<bridge>-*`).
    pub async fn create(bridge: &str, host_ip: Ipv4Addr) -> anyhow::Result<Self> {
        let _ = ip(&["link", "del", bridge]).await;
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{bridge}-")) {
                    let _ = ip(&["netns", "del", &name]).await;
                }
            }
        }
        ip(&["link", "add", bridge, "type", "bridge"]).await?;
        // A bridge without an address of its own takes the lowest MAC of its ports, so it
        // changed whenever a pod came or went, and the pods' neighbour entries for the host
        // went stale: connections to the API server and the S3 store timed out for seconds.
        ip(&["link", "set", bridge, "address", BRIDGE_MAC]).await?;
        ip(&["addr", "add", &format!("{host_ip}/16"), "dev", bridge]).await?;
        ip(&["link", "set", bridge, "up"]).await?;
        let mut used = BTreeSet::new();
        used.insert(u32::from(host_ip) & 0xffff);
        Ok(Network {
            bridge: bridge.to_string(),
            host_ip,
            used: Mutex::new((used, 1)),
        })
    }

    /// The host's address on the bridge.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// Creates a namespace with a fresh address for one pod. Addresses are handed out in
    /// turn, not lowest-free first: a pod started right after another was deleted never gets
    /// its address while the host's neighbour cache may still hold the old pod's MAC (its
    /// replies would go nowhere until the entry expired).
    pub async fn attach(&self) -> anyhow::Result<PodNet> {
        let offset = {
            let mut guard = self.used.lock().unwrap();
            let (used, last) = &mut *guard;
            let offset = (*last + 1..65_000u32)
                .chain(2..=*last)
                .find(|o| !used.contains(o))
                .context("pod network exhausted")?;
            used.insert(offset);
            *last = offset;
            offset
        };
        let ip_addr = Ipv4Addr::from((u32::from(self.host_ip) & 0xffff_0000) | offset);
        let netns = format!("{}-{offset}", self.bridge);
        let veth = format!("wv{offset}");
        let peer = format!("wp{offset}");
        let result = async {
            ip(&["netns", "add", &netns]).await?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]).await?;
            ip(&["link", "set", &peer, "netns", &netns]).await?;
            ip(&["link", "set", &veth, "master", &self.bridge, "up"]).await?;
            ip(&["-n", &netns, "link", "set", &peer, "name", "eth0"]).await?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip_addr}/16"),
                "dev",
                "eth0",
            ])
            .await?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"]).await?;
            ip(&["-n", &netns, "link", "set", "lo", "up"]).await?;
            ip(&[
                "-n",
                &netns,
                "route",
                "add",
                "default",
                "via",
                &self.host_ip.to_string(),
            ])
            .await
        }
        .await;
        let pod = PodNet {
            netns,
            veth,
            ip: ip_addr,
            offset,
        };
        if let Err(e) = result {
            self.detach(&pod).await;
            return Err(e);
        }
        Ok(pod)
    }

    /// Removes a pod's namespace and veth pair and frees its address.
    pub async fn detach(&self, pod: &PodNet) {
        let _ = ip(&["link", "del", &pod.veth]).await;
        let _ = ip(&["netns", "del", &pod.netns]).await;
        let _ = ip(&["neigh", "del", &pod.ip.to_string(), "dev", &self.bridge]).await;
        self.used.lock().unwrap().0.remove(&pod.offset);
    }

    /// Removes the bridge.
    pub async fn remove(&self) {
        let _ = ip(&["link", "del", &self.bridge]).await;
    }
}

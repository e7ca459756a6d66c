//! The link, address and route changes pod networking needs, over rtnetlink.
//!
//! A [`Netlink`] is a netlink socket bound to one network namespace: the
//! socket is opened by a thread that entered the namespace
//! ([`super::netns::run_in_netns`]), and a socket keeps the namespace it was
//! created in, so its requests act there while it is driven from any tokio
//! worker.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netns::{run_in_netns, NetnsError};

/// A netlink request that failed, with what it tried to do and where.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket in {netns}: {source}")]
    Socket { netns: String, source: std::io::Error },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink: {action} in {netns}: {}", describe(source))]
    Request { action: String, netns: String, source: rtnetlink::Error },
    #[error("{name} in {netns} exists but is not a bridge")]
    NotABridge { name: String, netns: String },
    #[error("no link {name} in {netns}")]
    NoSuchLink { name: String, netns: String },
}

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

/// The kernel's errno for a failed request, if it was the kernel that refused.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

/// The kernel's refusal as an OS error ("File exists"), or the library's message.
fn describe(error: &rtnetlink::Error) -> String {
    match errno(error) {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => error.to_string(),
    }
}

/// A netlink connection inside one network namespace.
pub struct Netlink {
    handle: Handle,
    /// For error messages: the namespace path, or "the node's namespace".
    netns: String,
}

impl Netlink {
    /// Connects inside the namespace at `netns`, or the process's own if `None`.
    pub async fn connect(netns: Option<&Path>) -> Result<Self, NetlinkError> {
        let label = netns.map_or_else(|| "the node's own namespace".to_owned(), |p| p.display().to_string());
        let socket = run_in_netns(netns, || Socket::new(NETLINK_ROUTE))
            .await?
            .map_err(|source| NetlinkError::Socket { netns: label.clone(), source })?;
        socket
            .set_non_blocking(true)
            .map_err(|source| NetlinkError::Socket { netns: label.clone(), source })?;
        // SAFETY: the descriptor comes straight from a socket we own and give up here.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        // Ends by itself once the last handle is dropped.
        tokio::spawn(connection);
        Ok(Self { handle, netns: label })
    }

    fn failed(&self, action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError + '_ {
        let action = action.into();
        move |source| NetlinkError::Request { action, netns: self.netns.clone(), source }
    }

    fn no_such_link(&self, name: &str) -> NetlinkError {
        NetlinkError::NoSuchLink { name: name.to_owned(), netns: self.netns.clone() }
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(self.failed(format!("looking up {name}"))(e)),
        }
    }

    /// Makes sure a bridge `name` exists, is up and has `mtu`; returns its index.
    pub async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<u32, NetlinkError> {
        let index = match self.link(name).await? {
            Some(link) if link_kind(&link) == Some(&InfoKind::Bridge) => link.header.index,
            Some(_) => return Err(NetlinkError::NotABridge { name: name.to_owned(), netns: self.netns.clone() }),
            None => {
                let create = self.handle.link().add(LinkBridge::new(name).mtu(mtu).build()).execute().await;
                match create {
                    // Another caller made it in the meantime: fine.
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(self.failed(format!("creating bridge {name}"))(e)),
                }
                self.link(name)
                    .await?
                    .map(|link| link.header.index)
                    .ok_or_else(|| self.no_such_link(name))?
            }
        };
        let up = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        self.handle.link().set(up).execute().await.map_err(self.failed(format!("setting {name} up")))?;
        Ok(index)
    }

    /// Puts `address` on the link (again, if it is there already).
    pub async fn add_address(&self, index: u32, address: Ipv4Net) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(self.failed(format!("adding address {address}")))
    }

    /// Creates a veth pair: `host` here, up and enslaved to `bridge` (in
    /// hairpin mode) if one is given, and its peer `peer` (down) inside the namespace `peer_netns`.
    /// Both get `mtu`.
    pub async fn add_veth(
        &self,
        host: &str,
        bridge: Option<u32>,
        peer: &str,
        peer_netns: &File,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer)
            .mtu(mtu)
            .setns_by_fd(peer_netns.as_raw_fd())
            // Not `up` here: the kernel would open the peer before the pair is
            // joined and fail with ENOTCONN. The pod side brings it up.
            .build();
        let mut pair = LinkVeth::new(host, peer).mtu(mtu).up();
        if let Some(bridge) = bridge {
            pair = pair.controller(bridge);
        }
        let pair = pair.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message))).build();
        self.handle.link().add(pair).execute().await.map_err(self.failed(format!("creating veth {host}")))?;
        if bridge.is_some() {
            // Hairpin mode: a pod that reaches a Service whose chosen endpoint
            // is the pod itself gets its (DNATed, bridged) packets back through
            // the port they came in on, which a bridge otherwise never does.
            let index = self.link(host).await?.ok_or_else(|| self.no_such_link(host))?.header.index;
            let hairpin = LinkBridgePort::new(index).hairpin(true).build();
            self.handle.link().set_port(hairpin).execute().await.map_err(self.failed(format!("setting hairpin mode on {host}")))?;
        }
        Ok(())
    }

    /// Sets the link called `name` up; returns its index.
    pub async fn set_up(&self, name: &str) -> Result<u32, NetlinkError> {
        let index = self
            .link(name)
            .await?
            .ok_or_else(|| self.no_such_link(name))?
            .header
            .index;
        let up = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(up).execute().await.map_err(self.failed(format!("setting {name} up")))?;
        Ok(index)
    }

    /// Deletes the link called `name`; `false` if there was none.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link(name).await? else { return Ok(false) };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            // Gone in between (its peer's namespace went away, say).
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(self.failed(format!("deleting {name}"))(e)),
        }
    }

    /// Adds the default route through `gateway` on link `index`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr, index: u32) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(index).build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(self.failed(format!("adding the default route via {gateway}")))
    }

    /// Routes `destination` through `gateway`, tagged with route protocol
    /// `protocol` so that its owner finds it again; replaces a route to the
    /// same destination.
    pub async fn replace_route(&self, destination: Ipv4Net, gateway: Ipv4Addr, protocol: u8) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix_len())
            .gateway(gateway)
            .protocol(RouteProtocol::Other(protocol))
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(self.failed(format!("adding the route to {destination} via {gateway}")))
    }

    /// The IPv4 routes of the main table tagged with `protocol`, by destination,
    /// with their gateways.
    pub async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<(Ipv4Net, Option<Ipv4Addr>)>, NetlinkError> {
        let all: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(self.failed("listing routes"))?;
        Ok(all
            .iter()
            .filter(|route| route.header.protocol == RouteProtocol::Other(protocol))
            .filter_map(|route| {
                let address = |wanted: fn(&RouteAttribute) -> Option<&RouteAddress>| {
                    route.attributes.iter().find_map(wanted).and_then(|a| match a {
                        RouteAddress::Inet(ip) => Some(*ip),
                        _ => None,
                    })
                };
                let destination = address(|a| if let RouteAttribute::Destination(d) = a { Some(d) } else { None })?;
                let gateway = address(|a| if let RouteAttribute::Gateway(g) = a { Some(g) } else { None });
                Some((Ipv4Net::new(destination, route.header.destination_prefix_length).ok()?, gateway))
            })
            .collect())
    }

    /// Deletes the route to `destination` tagged with `protocol`; `false` if there was none.
    pub async fn delete_route(&self, destination: Ipv4Net, protocol: u8) -> Result<bool, NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix_len())
            .protocol(RouteProtocol::Other(protocol))
            .build();
        match self.handle.route().del(route).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(self.failed(format!("deleting the route to {destination}"))(e)),
        }
    }

    /// Names of the veth links enslaved to the bridge with index `bridge`.
    pub async fn veths_on(&self, bridge: u32) -> Result<Vec<String>, NetlinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(self.failed("listing links"))?;
        Ok(links
            .iter()
            .filter(|link| link_kind(link) == Some(&InfoKind::Veth) && controller(link) == Some(bridge))
            .filter_map(link_name)
            .collect())
    }
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

fn controller(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::Controller(index) => Some(*index),
        _ => None,
    })
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

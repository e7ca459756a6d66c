//! CRI v1's RuntimeService and ImageService over [`CriService`]: message
//! translation only. What r8s does not do answers UNIMPLEMENTED.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::convert;
use super::error::CriError;
use super::service::CriService;
use super::streaming::{PendingAttach, PendingExec, Streaming};
use crate::image::Image;

type Reply<T> = Result<Response<T>, Status>;

/// The gRPC face of the service.
#[derive(Clone)]
pub struct CriServer {
    pub service: CriService,
    /// Serves Exec's streams; `None`: Exec is refused.
    pub streaming: Option<Arc<Streaming>>,
}

fn unimplemented<T>(what: &str) -> Reply<T> {
    Err(Status::unimplemented(format!("{what} is not supported by r8s")))
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    Ok(value)
}

#[tonic::async_trait]
impl RuntimeService for CriServer {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "r8s".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(&self, request: Request<cri::RunPodSandboxRequest>) -> Reply<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("the pod sandbox config is missing"))?;
        let id = self.service.run_sandbox(config, &request.runtime_handler).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(&self, request: Request<cri::StopPodSandboxRequest>) -> Reply<cri::StopPodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.service.stop_sandbox(required(&id, "pod_sandbox_id")?).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(&self, request: Request<cri::RemovePodSandboxRequest>) -> Reply<cri::RemovePodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        self.service.remove_sandbox(required(&id, "pod_sandbox_id")?).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(&self, request: Request<cri::PodSandboxStatusRequest>) -> Reply<cri::PodSandboxStatusResponse> {
        let id = request.into_inner().pod_sandbox_id;
        let record = self.service.sandbox(required(&id, "pod_sandbox_id")?)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::sandbox_status(&record)),
            timestamp: crate::sandbox::now_nanos(),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(&self, request: Request<cri::ListPodSandboxRequest>) -> Reply<cri::ListPodSandboxResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let items = self.service.sandboxes().iter().map(convert::sandbox).filter(|s| ::cri::filter::sandbox_matches(s, &filter)).collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(&self, request: Request<cri::CreateContainerRequest>) -> Reply<cri::CreateContainerResponse> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("the container config is missing"))?;
        let id = self.service.create_container(required(&request.pod_sandbox_id, "pod_sandbox_id")?, config).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id: id }))
    }

    async fn start_container(&self, request: Request<cri::StartContainerRequest>) -> Reply<cri::StartContainerResponse> {
        let id = request.into_inner().container_id;
        self.service.start_container(required(&id, "container_id")?).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(&self, request: Request<cri::StopContainerRequest>) -> Reply<cri::StopContainerResponse> {
        let request = request.into_inner();
        self.service.stop_container(required(&request.container_id, "container_id")?, request.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(&self, request: Request<cri::RemoveContainerRequest>) -> Reply<cri::RemoveContainerResponse> {
        let id = request.into_inner().container_id;
        self.service.remove_container(required(&id, "container_id")?).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(&self, request: Request<cri::ListContainersRequest>) -> Reply<cri::ListContainersResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let containers = self
            .service
            .containers()?
            .iter()
            .map(|(record, live)| convert::container(record, live.as_ref()))
            .filter(|container| ::cri::filter::container_matches(container, &filter))
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(&self, request: Request<cri::ContainerStatusRequest>) -> Reply<cri::ContainerStatusResponse> {
        let id = request.into_inner().container_id;
        let (record, info) = self.service.container(required(&id, "container_id")?)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert::container_status(&record, info.as_ref())),
            info: Default::default(),
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        let linux = request.linux.ok_or_else(|| Status::invalid_argument("no Linux resources given"))?;
        self.service.update_resources(required(&request.container_id, "container_id")?, linux).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(&self, request: Request<cri::ReopenContainerLogRequest>) -> Reply<cri::ReopenContainerLogResponse> {
        let id = request.into_inner().container_id;
        self.service.reopen_log(required(&id, "container_id")?).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, request: Request<cri::ExecSyncRequest>) -> Reply<cri::ExecSyncResponse> {
        let request = request.into_inner();
        let (exit_code, stdout, stderr) =
            self.service.exec_sync(required(&request.container_id, "container_id")?, request.cmd, request.timeout).await?;
        Ok(Response::new(cri::ExecSyncResponse { stdout, stderr, exit_code }))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let request = request.into_inner();
        let Some(streaming) = &self.streaming else {
            return unimplemented("Exec (the streaming server is not running)");
        };
        if request.cmd.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        if !request.stdout && !request.stderr && !request.stdin {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        // Checked now, so that a bad container fails here rather than in the stream.
        self.service.exec_command(required(&request.container_id, "container_id")?, request.cmd.clone(), request.tty)?;
        let url = streaming.register(PendingExec {
            container_id: request.container_id,
            cmd: request.cmd,
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
        })?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let request = request.into_inner();
        let Some(streaming) = &self.streaming else {
            return unimplemented("Attach (the streaming server is not running)");
        };
        if !request.stdout && !request.stderr && !request.stdin {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        let tty = self.service.check_attach(required(&request.container_id, "container_id")?)?;
        let url = streaming.register_attach(PendingAttach {
            container_id: request.container_id,
            tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
        })?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(&self, _: Request<cri::PortForwardRequest>) -> Reply<cri::PortForwardResponse> {
        unimplemented("PortForward")
    }

    async fn container_stats(&self, request: Request<cri::ContainerStatsRequest>) -> Reply<cri::ContainerStatsResponse> {
        let id = request.into_inner().container_id;
        let (record, stats) = self.service.container_stats(required(&id, "container_id")?).await?;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(convert::container_stats(&record, &stats)) }))
    }

    async fn list_container_stats(&self, request: Request<cri::ListContainerStatsRequest>) -> Reply<cri::ListContainerStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let filter = cri::ContainerFilter {
            id: filter.id,
            pod_sandbox_id: filter.pod_sandbox_id,
            label_selector: filter.label_selector,
            state: Some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 }),
        };
        let mut stats = Vec::new();
        for (record, live) in self.service.containers()? {
            if ::cri::filter::container_matches(&convert::container(&record, live.as_ref()), &filter) {
                // A container that exits meanwhile has no stats to give.
                if let Ok((record, usage)) = self.service.container_stats(&record.id).await {
                    stats.push(convert::container_stats(&record, &usage));
                }
            }
        }
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(&self, request: Request<cri::PodSandboxStatsRequest>) -> Reply<cri::PodSandboxStatsResponse> {
        let id = request.into_inner().pod_sandbox_id;
        let (sandbox, pod, containers) = self.service.sandbox_stats(required(&id, "pod_sandbox_id")?).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(convert::sandbox_stats(&sandbox, &pod, &containers)) }))
    }

    async fn list_pod_sandbox_stats(&self, request: Request<cri::ListPodSandboxStatsRequest>) -> Reply<cri::ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let filter = cri::PodSandboxFilter {
            id: filter.id,
            label_selector: filter.label_selector,
            state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 }),
        };
        let mut stats = Vec::new();
        for sandbox in self.service.sandboxes() {
            if ::cri::filter::sandbox_matches(&convert::sandbox(&sandbox), &filter) {
                if let Ok((sandbox, pod, containers)) = self.service.sandbox_stats(&sandbox.id).await {
                    stats.push(convert::sandbox_stats(&sandbox, &pod, &containers));
                }
            }
        }
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(&self, _: Request<cri::UpdateRuntimeConfigRequest>) -> Reply<cri::UpdateRuntimeConfigResponse> {
        unimplemented("UpdateRuntimeConfig (the pod CIDR is set when the service starts)")
    }

    async fn status(&self, _: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        let network = if self.service.has_network() {
            cri::RuntimeCondition { r#type: "NetworkReady".into(), status: true, ..Default::default() }
        } else {
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "PodNetworkDisabled".into(),
                message: "pod networking is off: pods get a network namespace with loopback only".into(),
            }
        };
        let runtime = cri::RuntimeCondition { r#type: "RuntimeReady".into(), status: true, ..Default::default() };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions: vec![runtime, network] }),
            runtime_handlers: vec![cri::RuntimeHandler { name: String::new(), features: Some(Default::default()) }],
            ..Default::default()
        }))
    }

    async fn checkpoint_container(&self, _: Request<cri::CheckpointContainerRequest>) -> Reply<cri::CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(&self, _: Request<cri::GetEventsRequest>) -> Reply<Self::GetContainerEventsStream> {
        Ok(Response::new(Box::pin(self.service.events().stream())))
    }

    async fn list_metric_descriptors(&self, _: Request<cri::ListMetricDescriptorsRequest>) -> Reply<cri::ListMetricDescriptorsResponse> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(&self, _: Request<cri::ListPodSandboxMetricsRequest>) -> Reply<cri::ListPodSandboxMetricsResponse> {
        unimplemented("ListPodSandboxMetrics")
    }

    async fn runtime_config(&self, _: Request<cri::RuntimeConfigRequest>) -> Reply<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: cri::CgroupDriver::Cgroupfs as i32 }),
        }))
    }
}

fn image_message(image: &Image) -> cri::Image {
    let (uid, username) = image_user(image.defaults.user.as_deref().unwrap_or_default());
    cri::Image {
        id: image.id.to_string(),
        repo_tags: vec![image.name.clone()],
        repo_digests: Vec::new(),
        size: image.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec { image: image.name.clone(), ..Default::default() }),
        pinned: false,
    }
}

/// The image config's `User` (`user[:group]`) as CRI reports it, as
/// containerd does: a numeric user is a uid, anything else a name (which the
/// kubelet cannot check for runAsNonRoot); neither when the image sets none.
fn image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or_default();
    match user.parse() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

fn image_reference(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    let reference = spec.map(|s| s.image).unwrap_or_default();
    if reference.is_empty() {
        return Err(Status::invalid_argument("no image given"));
    }
    Ok(reference)
}

#[tonic::async_trait]
impl ImageService for CriServer {
    async fn list_images(&self, request: Request<cri::ListImagesRequest>) -> Reply<cri::ListImagesResponse> {
        let wanted = request.into_inner().filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
        let images = match wanted {
            Some(reference) => self.service.find_image(&reference)?.into_iter().collect(),
            None => self.service.images().list().map_err(CriError::from)?,
        };
        Ok(Response::new(cri::ListImagesResponse { images: images.iter().map(image_message).collect() }))
    }

    async fn image_status(&self, request: Request<cri::ImageStatusRequest>) -> Reply<cri::ImageStatusResponse> {
        let reference = image_reference(request.into_inner().image)?;
        // CRI: an image that is not there is an empty answer, not an error.
        let image = self.service.find_image(&reference)?;
        Ok(Response::new(cri::ImageStatusResponse { image: image.as_ref().map(image_message), info: Default::default() }))
    }

    async fn pull_image(&self, request: Request<cri::PullImageRequest>) -> Reply<cri::PullImageResponse> {
        let request = request.into_inner();
        let reference = image_reference(request.image)?;
        let credentials = convert::credentials(request.auth).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let image = self.service.pull_image(&reference, credentials).await?;
        // containerd answers with the image id, the digest of its config.
        Ok(Response::new(cri::PullImageResponse { image_ref: image.id.to_string() }))
    }

    async fn remove_image(&self, request: Request<cri::RemoveImageRequest>) -> Reply<cri::RemoveImageResponse> {
        let reference = image_reference(request.into_inner().image)?;
        // CRI: removing an image that is not there succeeds.
        if let Some(image) = self.service.find_image(&reference)? {
            self.service.images().remove(&image.name).map_err(CriError::from)?;
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<cri::ImageFsInfoRequest>) -> Reply<cri::ImageFsInfoResponse> {
        let root = self.service.image_root().to_path_buf();
        let (bytes, inodes) = tokio::task::spawn_blocking(move || disk_usage(&root))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let usage = cri::FilesystemUsage {
            timestamp: crate::sandbox::now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: self.service.image_root().display().to_string() }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse { image_filesystems: vec![usage], container_filesystems: Vec::new() }))
    }
}

/// Bytes and inodes used below `dir` (symlinks not followed).
fn disk_usage(dir: &std::path::Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            inodes += 1;
            bytes += meta.len();
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::image_user;

    #[test]
    fn image_users_are_uids_or_names() {
        assert_eq!(image_user("1000:1000"), (Some(1000), String::new()));
        assert_eq!(image_user("0"), (Some(0), String::new()));
        assert_eq!(image_user("nginx:nginx"), (None, "nginx".to_string()));
        assert_eq!(image_user(""), (None, String::new()));
    }
}

"""Every pod the chart or k8s/ makes passes Pod Security Admission's `restricted` profile, which a
namespace labelled `pod-security.kubernetes.io/enforce: restricted` enforces at admission: a
Deployment whose pods fail it is accepted, and its ReplicaSet then logs FailedCreate forever.

The checks are the profile's, as kubernetes/pod-security-admission's policy/check_*.go apply them
(https://kubernetes.io/docs/concepts/security/pod-security-standards/): the baseline ones (no host
namespaces, ports or paths, not privileged, only the baseline capabilities, no custom SELinux user
or role, default /proc mount, seccomp not Unconfined, safe sysctls) and the restricted ones
(volume types, no privilege escalation, non-root, no uid 0, seccomp RuntimeDefault or Localhost, all
capabilities dropped, at most NET_BIND_SERVICE added). Pod-level settings count for every
container unless a container overrides them. The locked-down test in test_chart_render.py asks for
more than this (read-only root, numeric uid) but for the chart only; this one covers k8s/ too,
every kustomization under it.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import K8S, SCENARIOS, WORKLOADS, k8s_objects, pod_spec, scenario_objects

RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(spec: dict) -> list[str]:
    bad = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(field)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {volume['name']}: {sorted(kinds)}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl['name']}")
    all_containers = spec.get("initContainers", []) + spec["containers"] + spec.get("ephemeralContainers", [])
    for c in all_containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation not false")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            bad.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities not dropping ALL")
        added = set(caps.get("add", []))
        if not added <= {"NET_BIND_SERVICE"} or not added <= BASELINE_CAPABILITIES:
            bad.append(f"{name}: capabilities add {sorted(added)}")
        for where in (pod_sc.get("seLinuxOptions") or {}, sc.get("seLinuxOptions") or {}):
            if where.get("type", "") not in SELINUX_TYPES or where.get("user") or where.get("role"):
                bad.append(f"{name}: seLinuxOptions {where}")
    return bad


def kustomizations() -> list[str]:
    return sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("Kustomization"))


def violations(objs: list[dict]) -> dict[str, list[str]]:
    found = {}
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            bad = restricted_violations(pod_spec(obj))
            if bad:
                found[f"{obj['kind']}/{obj['metadata']['name']}"] = bad
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_pods_pass_the_restricted_profile(scenario):
    assert violations(scenario_objects(scenario)) == {}


@pytest.mark.parametrize("env", kustomizations())
def test_k8s_pods_pass_the_restricted_profile(env):
    objs = k8s_objects(env)
    assert any(o["kind"] in WORKLOADS for o in objs), env
    assert violations(objs) == {}


def test_the_check_catches_what_the_profile_refuses():
    base = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
        ],
    }
    assert restricted_violations(base) == []
    for change, words in (
        ({"hostNetwork": True}, "hostNetwork"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "volume h"),
        ({"securityContext": {"runAsNonRoot": True}}, "seccompProfile None"),
        ({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}, "runAsNonRoot"),
    ):
        assert any(words in v for v in restricted_violations({**base, **change})), change
    root = {**base, "containers": [{**base["containers"][0], "securityContext": {"runAsUser": 0}}]}
    assert "c: runAsUser 0" in restricted_violations(root)

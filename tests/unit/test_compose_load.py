"""Good compose files: every supported key lands in the right model field."""

from __future__ import annotations

import textwrap
from pathlib import Path

from swarmlite.spec.compose import load_stack, normalize_stack_name
from swarmlite.spec.service import (
    Dependency,
    HealthCheck,
    Mount,
    NetworkSpec,
    PortSpec,
    RestartPolicy,
    ServiceSpec,
    StackSpec,
    UpdateConfig,
    VolumeSpec,
)

FIXTURES = Path(__file__).parent / "compose_files"


def load(tmp_path: Path, text: str, **kw: object) -> StackSpec:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    kw.setdefault("environ", {})
    return load_stack([path], **kw)  # type: ignore[arg-type]


def one(stack: StackSpec, name: str) -> ServiceSpec:
    return next(s for s in stack.services if s.name == name)


def test_minimal_service_gets_defaults_and_default_network(tmp_path: Path) -> None:
    stack = load(tmp_path, "services:\n  web:\n    image: nginx\n", stack="shop")
    web = one(stack, "web")
    assert (web.name, web.stack, web.image, web.full_name) == ("web", "shop", "nginx", "shop_web")
    assert web.networks == ("default",)
    assert stack.networks == (NetworkSpec(name="default"),)
    assert stack.warnings == ()


def test_stack_name_defaults_to_normalized_directory_then_top_level_name(tmp_path: Path) -> None:
    folder = tmp_path / "My.Shop App"
    folder.mkdir()
    assert load(folder, "services: {web: {image: a}}").name == "myshopapp"
    assert load(folder, "name: custom\nservices: {web: {image: a}}").name == "custom"
    assert load(folder, "name: custom\nservices: {web: {image: a}}", stack="given").name == "given"
    assert normalize_stack_name("-Foo_Bar.1") == "foo_bar1"


def test_command_entrypoint_environment_labels(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: app
            command: gunicorn -b 0.0.0.0:80 "app:make()"
            entrypoint: ["/bin/tini", "--"]
            environment: [A=1, FROM_ENV, UNSET_VAR, "EMPTY="]
            labels: {tier: front, n: 3}
            working_dir: /srv
            user: 1000
            stop_signal: SIGINT
            stop_grace_period: 1m30s
          api:
            image: app
            environment: {X: "1", Y: true, Z: null, W: null}
            labels: ["a=b", "flag"]
        """,
        environ={"FROM_ENV": "here", "W": "w"},
    )
    web, api = one(stack, "web"), one(stack, "api")
    assert web.command == ("gunicorn", "-b", "0.0.0.0:80", "app:make()")
    assert web.entrypoint == ("/bin/tini", "--")
    assert web.environment == {"A": "1", "FROM_ENV": "here", "EMPTY": ""}
    assert web.labels == {"tier": "front", "n": "3"}
    assert (web.working_dir, web.user, web.stop_signal) == ("/srv", "1000", "SIGINT")
    assert web.stop_grace_period == 90.0
    assert api.environment == {"X": "1", "Y": "true", "W": "w"}
    assert api.labels == {"a": "b", "flag": ""}


def test_env_file_relative_to_compose_file_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text('# comment\nA=from-file\nB="quoted value"\nexport C=3\n')
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: app
            env_file: [app.env, {path: missing.env, required: false}]
            environment: {A: override}
        """,
    )
    assert one(stack, "web").environment == {"A": "override", "B": "quoted value", "C": "3"}


def test_ports_short_long_and_ranges(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: app
            ports:
              - "8080:80"
              - "81"
              - 82
              - "5353:53/udp"
              - "8000-8001:90-91"
              - target: 443
                published: 8443
                protocol: tcp
                mode: host
                app_protocol: http
            expose: ["9000", 9001, "9002-9003/tcp"]
        """,
    )
    web = one(stack, "web")
    assert web.ports == (
        PortSpec(target=80, published=8080),
        PortSpec(target=81),
        PortSpec(target=82),
        PortSpec(target=53, published=5353, protocol="udp"),
        PortSpec(target=90, published=8000),
        PortSpec(target=91, published=8001),
        PortSpec(target=443, published=8443, mode="host", app_protocol="http"),
    )
    assert web.expose == (9000, 9001, 9002, 9003)
    assert stack.warnings == (
        "service 'web': port 5353/udp is not published: the mesh routes TCP only; "
        "use the long syntax with mode: host",
    )


def test_host_ip_and_other_app_protocol_only_warn(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: app
            ports: ["127.0.0.1:8080:80", {target: 81, app_protocol: grpc}]
        """,
    )
    assert one(stack, "web").ports == (PortSpec(target=80, published=8080), PortSpec(target=81))
    assert any("127.0.0.1" in w and "ignored" in w for w in stack.warnings)
    assert any("grpc" in w for w in stack.warnings)


def test_deploy_section(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: app
            deploy:
              mode: replicated
              replicas: 4
              labels: [com.example=1]
              restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3, window: 1m}
              resources:
                limits: {cpus: "1.5", memory: 512m}
                reservations: {cpus: 0.25, memory: 1073741824}
              placement:
                constraints: [node.role == worker]
                preferences: [{spread: node.labels.zone}]
                max_replicas_per_node: 2
              update_config:
                parallelism: 2
                delay: 10s
                failure_action: rollback
                monitor: 500ms
                max_failure_ratio: 0.2
                order: start-first
              rollback_config: {parallelism: 0, failure_action: continue}
          agent:
            image: agent
            deploy: {mode: global}
        """,
    )
    web, agent = one(stack, "web"), one(stack, "agent")
    assert web.replicas == 4
    assert web.deploy_labels == {"com.example": "1"}
    assert web.restart_policy == RestartPolicy(
        condition="on-failure", delay=2.0, max_attempts=3, window=60.0
    )
    assert web.resources.limits.cpus == 1.5
    assert web.resources.limits.memory == 512 * 2**20
    assert web.resources.reservations.cpus == 0.25
    assert web.resources.reservations.memory == 2**30
    assert web.placement.constraints == ("node.role == worker",)
    assert web.placement.preferences == ("node.labels.zone",)
    assert web.placement.max_replicas_per_node == 2
    assert web.update_config == UpdateConfig(
        parallelism=2,
        delay=10.0,
        failure_action="rollback",
        monitor=0.5,
        max_failure_ratio=0.2,
        order="start-first",
    )
    assert web.rollback_config == UpdateConfig(parallelism=0, failure_action="continue")
    assert agent.mode == "global"


def test_restart_maps_to_policy_unless_deploy_sets_one(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          a: {image: x, restart: "no"}
          b: {image: x, restart: always}
          c: {image: x, restart: unless-stopped}
          d: {image: x, restart: "on-failure:5"}
          e: {image: x, restart: on-failure}
          f:
            image: x
            restart: always
            deploy: {restart_policy: {condition: none}}
        """,
    )
    assert one(stack, "a").restart_policy.condition == "none"
    assert one(stack, "b").restart_policy.condition == "any"
    assert one(stack, "c").restart_policy.condition == "any"
    assert one(stack, "d").restart_policy == RestartPolicy(condition="on-failure", max_attempts=5)
    assert one(stack, "e").restart_policy == RestartPolicy(condition="on-failure")
    assert one(stack, "f").restart_policy.condition == "none"


def test_healthcheck_forms(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          a:
            image: x
            healthcheck:
              test: ["CMD", "curl", "-f", "http://localhost"]
              interval: 10s
              timeout: 2s
              retries: 5
              start_period: 1m
          b: {image: x, healthcheck: {test: "pg_isready -U app"}}
          c: {image: x, healthcheck: {disable: true}}
          d: {image: x, healthcheck: {test: ["NONE"]}}
          e: {image: x, healthcheck: {interval: 5s, retries: 2}}
        """,
    )
    assert one(stack, "a").healthcheck == HealthCheck(
        test=("CMD", "curl", "-f", "http://localhost"),
        interval=10.0,
        timeout=2.0,
        retries=5,
        start_period=60.0,
    )
    assert one(stack, "b").healthcheck == HealthCheck(test=("CMD-SHELL", "pg_isready -U app"))
    assert not one(stack, "c").has_healthcheck
    assert one(stack, "d").healthcheck == HealthCheck(test=("NONE",))
    # No test: the image's own, with these times (as Compose); 0 keeps the image's.
    e = one(stack, "e")
    assert e.healthcheck == HealthCheck(test=(), interval=5.0, timeout=0.0, retries=2)
    assert e.healthcheck.inherits and not e.has_healthcheck


def test_volumes_short_long_tmpfs_and_top_level(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          db:
            image: postgres
            volumes:
              - data:/var/lib/postgresql/data
              - ./conf:/etc/conf:ro
              - /abs/path:/abs
              - /anonymous
              - old:/old
              - shared:/shared-data
              - type: volume
                source: logs
                target: /logs
                read_only: true
              - type: bind
                source: ../shared
                target: /shared
              - type: tmpfs
                target: /scratch
                tmpfs: {size: 64m}
            tmpfs: ["/run:size=1m", /tmp]
        volumes:
          data:
          logs:
            driver: local
            driver_opts: {type: nfs}
            labels: [team=db]
          old:
            external: true
            name: legacy_logs
          shared:
            external: true
        """,
    )
    base = tmp_path.absolute()
    assert one(stack, "db").mounts == (
        Mount(type="volume", source="data", target="/var/lib/postgresql/data"),
        Mount(type="bind", source=str(base / "conf"), target="/etc/conf", read_only=True),
        Mount(type="bind", source="/abs/path", target="/abs"),
        Mount(type="volume", source="", target="/anonymous"),
        Mount(type="volume", source="legacy_logs", target="/old", external=True),
        Mount(type="volume", source="shared", target="/shared-data", external=True),
        Mount(type="volume", source="logs", target="/logs", read_only=True),
        Mount(type="bind", source=str(base.parent / "shared"), target="/shared"),
        Mount(type="tmpfs", target="/scratch", tmpfs_size=64 * 2**20),
        Mount(type="tmpfs", target="/run", tmpfs_size=2**20),
        Mount(type="tmpfs", target="/tmp"),
    )
    assert stack.volumes == (
        VolumeSpec(name="data"),
        VolumeSpec(name="logs", driver_opts={"type": "nfs"}, labels={"team": "db"}),
        VolumeSpec(name="old", external=True, external_name="legacy_logs"),
        VolumeSpec(name="shared", external=True),
    )
    # The Docker volume each uses: external ones by their own name, anonymous: none.
    names = [m.volume_name("shop") for m in one(stack, "db").mounts if m.type == "volume"]
    assert names == ["shop_data", "", "legacy_logs", "shared", "shop_logs"]


def test_networks_list_and_map(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web: {image: x, networks: [front, back]}
          db:
            image: x
            networks:
              back: {aliases: [database]}
          lone: {image: x}
        networks:
          front: {driver: overlay, labels: {a: b}}
          back: {internal: true}
        """,
    )
    assert one(stack, "web").networks == ("front", "back")
    assert one(stack, "db").networks == ("back",)
    assert stack.networks == (
        NetworkSpec(name="front", labels={"a": "b"}),
        NetworkSpec(name="back", internal=True),
        NetworkSpec(name="default"),
    )
    assert stack.warnings == ("Ignoring unsupported options: networks.back.aliases (services db)",)


def test_depends_on_short_and_long(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        services:
          web: {image: x, depends_on: [api]}
          api:
            image: x
            depends_on:
              db: {condition: service_healthy, restart: true}
              cache: {condition: service_started, required: false}
          db: {image: x}
          cache: {image: x}
        """,
    )
    assert one(stack, "web").depends_on == (Dependency(service="api"),)
    assert one(stack, "api").depends_on == (
        Dependency(service="db", condition="service_healthy", restart=True),
        Dependency(service="cache", required=False),
    )


def test_extension_keys_version_and_anchors(tmp_path: Path) -> None:
    stack = load(
        tmp_path,
        """
        version: "3.9"
        x-defaults: &defaults
          image: base
          restart: always
        services:
          web:
            <<: *defaults
            x-notes: anything
            deploy: {x-owner: me, replicas: 2}
        networks:
          x-unused: {}
        """,
    )
    web = one(stack, "web")
    assert (web.image, web.replicas, web.restart_policy.condition) == ("base", 2, "any")
    assert stack.warnings == ()


def test_realistic_compose_world_file_loads_with_one_warning() -> None:
    stack = load_stack([FIXTURES / "realistic.yml"], environ={"POSTGRES_PASSWORD": "pw"})
    assert stack.name == "shop"
    assert [s.name for s in stack.services] == ["web", "worker", "db", "cache"]
    assert one(stack, "db").environment["POSTGRES_PASSWORD"] == "pw"
    assert one(stack, "web").image == "shop/web:1.4"
    assert stack.warnings == (
        "Ignoring unsupported options: build, cap_add, container_name, "
        "deploy.endpoint_mode, extra_hosts, hostname, logging, platform, "
        "stdin_open, tty, ulimits (services cache, db, web, worker)",
    )


def test_top_level_unsupported_options_join_the_one_warning(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("t")
    stack = load(
        tmp_path,
        """
        services:
          web:
            image: x
            networks: [outside, lan]
            secrets: [token]
        networks:
          outside: {external: true}
          lan: {driver: macvlan}
        secrets:
          token: {file: ./token.txt, driver: vault}
        configs:
          conf: {content: x, template_driver: golang}
        """,
    )
    assert stack.warnings == (
        "Ignoring unsupported options: top-level configs.conf.template_driver, "
        "networks.outside.external, secrets.token.driver",
        "network 'lan': driver 'macvlan' is ignored; swarmlite uses overlay",
    )
    assert [n.name for n in stack.networks] == ["outside", "lan"]

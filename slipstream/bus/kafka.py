"""The bus on Apache Kafka (or any Kafka-protocol broker), through aiokafka.

:class:`KafkaBus` implements :class:`slipstream.bus.base.Bus`.  Records with a
key go to the partition :func:`~slipstream.bus.base.partition_for` computes
(keyless records to partition 0), chosen here rather than by aiokafka so that
this bus and :class:`~slipstream.bus.memory.MemoryBus` agree record for
record.  Producers wait for ``acks="all"``; consumers commit explicitly.

Every aiokafka failure surfaces as :class:`~slipstream.errors.BusError`; a
broker that does not answer within ``BusConfig.connect_timeout_s`` as
:class:`~slipstream.errors.BusUnreachableError` naming the address and, per
bootstrap server, the cause (:mod:`slipstream.bus.kafka_probe`).  TLS, SASL
and the client id come from ``BusConfig.kafka_client``
(:mod:`slipstream.kafka_settings`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from slipstream.bus.base import OffsetReset, partition_for
from slipstream.bus.kafka_clients import KafkaConsumer, KafkaProducer, bus_error
from slipstream.bus.kafka_probe import ServerProblem, diagnose
from slipstream.bus.names import check_topic_name
from slipstream.config import BusConfig
from slipstream.errors import BusError, BusUnreachableError
from slipstream.kafka_settings import KafkaClientSettings

__all__ = ["KafkaBus", "KafkaConsumer", "KafkaProducer", "KafkaSettings"]

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Client settings of a :class:`KafkaBus`.

    The group timings are short so that tests and demos rebalance within a
    second or two; a production deployment with long pauses (GC, slow
    disks) may want the Kafka defaults (session 45 s, heartbeat 3 s).

    Attributes:
        session_timeout_ms: A group member that sends no heartbeat for this
            long is dropped from its group.
        heartbeat_interval_ms: How often members heartbeat; a rebalance is
            noticed within about this long.
        rebalance_timeout_ms: How long the coordinator waits for members to
            rejoin during a rebalance.
        fetch_max_wait_ms: Longest time the broker holds a fetch with no new
            data; bounds how late an idle consumer sees a new record.
        request_timeout_ms: Timeout of one request to the broker.
        delivery_timeout_ms: How long a produced record may wait for its ack,
            retries included, before its send fails (Kafka's
            ``delivery.timeout.ms``, same default): a broker away for less than
            this delays producers instead of failing them.
        acks: Producer acknowledgements: ``"all"`` (every in-sync replica),
            1 (the leader) or 0 (none; positions are then unknown).
        client_id: Client id the broker logs.
        replication_factor: Replicas of each partition of topics Slipstream
            creates (1 suits a single broker; 3 a production cluster).
        single_record_batches: Send every record in a batch of its own.
            Needed on Tansu, whose ListOffsets answers "base offset of the
            last batch + 1" as the end of a partition (so ``end_offsets`` and
            ``auto_offset_reset="latest"`` would land inside the last
            batch); costs throughput.  None: on when the broker's cluster id
            starts with ``tansu``.
    """

    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 300
    rebalance_timeout_ms: int = 6000
    fetch_max_wait_ms: int = 100
    request_timeout_ms: int = 10000
    delivery_timeout_ms: int = 120000
    acks: str | int = "all"
    client_id: str = "slipstream"
    replication_factor: int = 1
    single_record_batches: bool | None = None

    def __post_init__(self) -> None:
        for name in (
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "rebalance_timeout_ms",
            "fetch_max_wait_ms",
            "request_timeout_ms",
            "delivery_timeout_ms",
            "replication_factor",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        if self.request_timeout_ms <= max(self.rebalance_timeout_ms, self.session_timeout_ms):
            # The coordinator may hold a JoinGroup that long before answering.
            raise ValueError(
                "request_timeout_ms must exceed rebalance_timeout_ms and session_timeout_ms"
            )
        if self.acks not in ("all", 1, 0):
            raise ValueError(f'acks must be "all", 1 or 0, got {self.acks!r}')


class KafkaBus:
    """A bus on a Kafka cluster.

    Args:
        config: ``config.kafka`` is the bootstrap ``HOST:PORT`` (required);
            ``config.partitions`` the partitions of topics created on first
            use; ``config.connect_timeout_s`` bounds every connection attempt.
        settings: aiokafka client settings.
    """

    name = "kafka"

    def __init__(self, config: BusConfig, settings: KafkaSettings | None = None) -> None:
        if config.kafka is None:
            raise ValueError("KafkaBus needs BusConfig.kafka (HOST:PORT)")
        self.config = config
        self.settings = settings or KafkaSettings()
        client = config.kafka_client or KafkaClientSettings.plaintext(config.kafka)
        if client.servers != config.kafka:
            client = client.with_bootstrap(config.kafka)
        self.client = client
        self.bootstrap: str = config.kafka
        #: aiokafka's connection arguments (servers, TLS context, SASL, client id).
        self._connection = client.aiokafka_kwargs(self.settings.client_id)
        self._admin: AIOKafkaAdminClient | None = None
        self._partition_counts: dict[str, int] = {}
        self._clients: list[KafkaProducer | KafkaConsumer] = []
        self._topic_lock = asyncio.Lock()
        #: Whether producers send one record per batch (see KafkaSettings).
        self.single_record_batches = bool(self.settings.single_record_batches)

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to the cluster.

        Raises:
            BusUnreachableError: No broker answered at the bootstrap address
                within ``connect_timeout_s``.
        """
        if self._admin is not None:
            return
        admin = AIOKafkaAdminClient(
            **self._connection, request_timeout_ms=self.settings.request_timeout_ms
        )
        await self.connect(self._bootstrap(admin), admin.close)
        self._admin = admin
        logger.info(
            "Kafka bus connected to %s (one record per batch: %s)",
            self.client.describe(),
            self.single_record_batches,
        )

    async def _bootstrap(self, admin: AIOKafkaAdminClient) -> None:
        await admin.start()
        single = self.settings.single_record_batches
        if single is None:
            cluster = await admin.describe_cluster()
            single = str(cluster.get("cluster_id") or "").startswith("tansu")
        self.single_record_batches = single

    async def stop(self) -> None:
        """Close every producer and consumer made by this bus, then the admin client."""
        for client in list(self._clients):
            try:
                await client.stop()
            except (KafkaError, OSError) as exc:
                # Keep closing the others; a dead broker must not leak clients.
                logger.warning("closing a Kafka client failed: %s", exc)
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
            logger.info("Kafka bus disconnected from %s", self.bootstrap)

    async def connect(
        self, starting: Awaitable[None], close: Any, *, group_id: str | None = None
    ) -> None:
        """Await a client's ``start()`` within the connect timeout; close it on failure.

        A group consumer's start also joins its group, which may wait for a
        rebalance: it gets ``session_timeout_ms + rebalance_timeout_ms`` more.

        Raises:
            BusUnreachableError: Timed out or the connection failed.
            BusError: Any other aiokafka failure, or the group join timed out.
        """
        timeout_s = self.config.connect_timeout_s
        if group_id is not None:
            s = self.settings
            timeout_s += (s.session_timeout_ms + s.rebalance_timeout_ms) / 1000
        try:
            async with asyncio.timeout(timeout_s):
                await starting
        except TimeoutError:
            await close()
            if group_id is not None:
                raise BusError(
                    f"joining consumer group {group_id} at {self.bootstrap} "
                    f"took longer than {timeout_s:g} s"
                ) from None
            raise BusUnreachableError(
                f"no Kafka broker answered at {self.bootstrap} within {timeout_s:g} s"
                + await self._causes("")
            ) from None
        except (KafkaConnectionError, OSError) as exc:
            await close()
            raise BusUnreachableError(
                f"cannot connect to the Kafka cluster at {self.bootstrap}"
                + await self._causes(f": {exc}")
            ) from exc
        except KafkaError as exc:
            await close()
            problems = await self._diagnose()
            if problems:  # e.g. a SASL refusal, which some aiokafka versions raise as is
                raise BusUnreachableError(
                    f"cannot use the Kafka cluster at {self.bootstrap}:"
                    + "".join(f"\n  {problem}" for problem in problems)
                ) from exc
            raise bus_error(f"connecting to {self.bootstrap}", exc) from exc
        except BaseException:
            await close()
            raise

    async def _diagnose(self) -> list[ServerProblem]:
        timeout_s = min(3.0, self.config.connect_timeout_s)
        return await diagnose(self.client, timeout_s, self.settings.client_id)

    async def _causes(self, reason: str) -> str:
        """The end of an error message: why each bootstrap server failed, else ``reason``."""
        problems = await self._diagnose()
        if not problems:
            return f"{reason}; check the address (--kafka / SLIPSTREAM_KAFKA) and that it runs"
        return ":" + "".join(f"\n  {problem}" for problem in problems)

    @property
    def admin(self) -> AIOKafkaAdminClient:
        """The started admin client (``slipstream doctor`` reads topic configs with it)."""
        return self._admin_client()

    def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise BusError("the Kafka bus is not started; call start() first")
        return self._admin

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions unless it exists.

        An existing topic keeps its partition count.  Nothing is created when
        the topic exists (a cluster may allow reading topics but not creating).
        """
        check_topic_name(topic)
        if partitions <= 0:
            raise ValueError("a topic needs at least one partition")
        admin = self._admin_client()
        async with self._topic_lock:
            if topic in self._partition_counts:
                return
            count = await self._describe(topic)
            if count == 0:
                await self._create(admin, topic, partitions)
                count = await self._await_topic(topic)
            self._partition_counts[topic] = count
        logger.info("topic %s has %d partitions", topic, count)

    async def _create(self, admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
        try:
            response = await admin.create_topics(
                [NewTopic(topic, partitions, self.settings.replication_factor)]
            )
        except KafkaError as exc:
            raise bus_error(f"creating topic {topic}", exc) from exc
        for name, code, *rest in response.topic_errors:
            # Already exists: another process was quicker, which is fine.
            if name == topic and code not in (0, _TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest and rest[0] else f"error code {code}"
                raise BusError(f"cannot create topic {topic}: {message}")

    async def _await_topic(self, topic: str) -> int:
        """Partitions of a just-created topic, once the metadata shows it."""
        timeout_s = self.settings.request_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    count = await self._describe(topic)
                    if count:
                        return count
                    # Metadata lags creation on a multi-broker cluster; ask again.
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise BusError(
                f"topic {topic} was created but is not visible after {timeout_s:g} s"
            ) from None

    async def _describe(self, topic: str) -> int:
        """Partitions of ``topic`` according to the cluster, 0 if it does not exist.

        Asks for the metadata of all topics: naming a topic in a metadata
        request would let the broker auto-create it with its default count.
        """
        try:
            described = await self._admin_client().describe_topics(None)
        except KafkaError as exc:
            raise bus_error(f"describing topic {topic}", exc) from exc
        for entry in described:
            if entry["topic"] == topic and entry["error_code"] == 0:
                return len(entry["partitions"])
        return 0

    async def partitions(self, topic: str) -> int:
        """Partitions of ``topic``, creating it with ``config.partitions`` if missing.

        Counts are cached: Slipstream never adds partitions to a live topic.
        """
        count = self._partition_counts.get(topic)
        if count is None:
            await self.ensure_topic(topic, self.config.partitions)
            count = self._partition_counts[topic]
        return count

    async def partition_of(self, topic: str, key: bytes | None, partition: int | None) -> int:
        """The partition a record goes to (see module doc).

        Raises:
            BusError: ``partition`` is not a partition of ``topic``.
        """
        count = await self.partitions(topic)
        if partition is None:
            return 0 if key is None else partition_for(key, count)
        if not 0 <= partition < count:
            raise BusError(
                f"topic {topic} has partitions 0..{count - 1}; there is no partition {partition}"
            )
        return partition

    async def producer(self) -> KafkaProducer:
        """A started producer (``acks`` from the settings)."""
        self._admin_client()
        producer = AIOKafkaProducer(
            **self._connection,
            acks=self.settings.acks,
            # aiokafka expires unsent batches after its request timeout.
            request_timeout_ms=self.settings.delivery_timeout_ms,
            linger_ms=0,
            # A batch always takes its first record, so 1 byte means one record.
            max_batch_size=1 if self.single_record_batches else 16384,
        )
        await self.connect(producer.start(), producer.stop)
        wrapper = KafkaProducer(self, producer)
        self._clients.append(wrapper)
        return wrapper

    async def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> KafkaConsumer:
        """A started consumer of ``topics``.

        With ``group_id`` it subscribes and shares the partitions with the
        group's other members (assigned a moment after it starts: the first
        :meth:`~KafkaConsumer.getmany` waits for it); without, it is assigned
        every partition of ``topics`` at once.  Missing topics are created.
        """
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"unknown auto_offset_reset {auto_offset_reset!r}")
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        counts = {topic: await self.partitions(topic) for topic in topics}
        s = self.settings
        consumer = AIOKafkaConsumer(
            *(topics if group_id is not None else ()),
            **self._connection,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            request_timeout_ms=s.request_timeout_ms,
        )
        if group_id is None:
            consumer.assign(
                [KafkaTopicPartition(t, p) for t, count in counts.items() for p in range(count)]
            )
        await self.connect(consumer.start(), consumer.stop, group_id=group_id)
        wrapper = KafkaConsumer(self, consumer, group_id)
        self._clients.append(wrapper)
        return wrapper

    async def leave_group(self, group_id: str, member_id: str, node_id: int) -> None:
        """Send LeaveGroup for a member (best effort; see KafkaConsumer.stop)."""
        admin = self._admin
        if admin is None:
            return
        try:
            async with asyncio.timeout(self.settings.request_timeout_ms / 1000):
                await admin._client.send(node_id, LeaveGroupRequest(group_id, member_id))
        except (KafkaError, OSError, TimeoutError) as exc:
            logger.warning("could not leave group %s: %s", group_id, exc)

    def forget(self, client: KafkaProducer | KafkaConsumer) -> None:
        """Called by a client when it stops."""
        if client in self._clients:
            self._clients.remove(client)

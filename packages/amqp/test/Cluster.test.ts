/**
 * RPC across a RabbitMQ cluster: private nodes on this machine, one Erlang cookie, `join_cluster`. Two RPC servers
 * consume one quorum queue from different nodes; the client lists every node's URL. The node the client is
 * connected to (which is also the queue's first leader) stops: the client reconnects to another URL, every request
 * settles, the servers keep consuming once the queue's leader has moved, and every request gets its answer
 * (a caller retries a request whose channel died, as an at-least-once caller does).
 *
 * Three nodes, not two: a quorum queue needs a majority of its members, so a 2-node cluster cannot keep it
 * available when either node stops (Raft). Booting the cluster takes ~20 s on this machine, within `npm test`'s
 * budget, so the test always runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect, RpcClient, RpcServer } from "@warren/amqp"
import { TestBroker } from "@warren/amqp/testing"
import { Effect, Fiber, Layer, Ref, Stream } from "effect"
import { execFile } from "node:child_process"

/** Runs `rabbitmqctl ARGS` against one node of the cluster. */
const ctl = (node: TestBroker.BrokerInfo, ...args: ReadonlyArray<string>) =>
  Effect.async<string, Error>((resume) => {
    const [cmd, ...prefix] = node.ctl!
    const child = execFile(cmd!, [...prefix, ...args], { env: { ...process.env, ...node.ctlEnv }, encoding: "utf8", timeout: 60_000 }, (
      error,
      stdout,
      stderr
    ) => resume(error === null ? Effect.succeed(stdout) : Effect.fail(new Error(`rabbitmqctl ${args.join(" ")}: ${stdout}${stderr}`))))
    return Effect.sync(() => child.kill())
  })

/** The node that leads a quorum queue, as the broker reports it. */
const leaderOf = (node: TestBroker.BrokerInfo, queue: string) =>
  ctl(node, "list_queues", "name", "leader", "--formatter", "json").pipe(
    Effect.map((out) => {
      const rows = JSON.parse(out) as ReadonlyArray<{ readonly name: string; readonly leader: string }>
      return rows.find((row) => row.name === queue)?.leader
    })
  )

const nodeName = (node: TestBroker.BrokerInfo) => node.ctl![2]!

describe("RPC across a RabbitMQ cluster (3 private nodes)", () => {
  it.scopedLive(
    "the client's node stops: the client reconnects to another URL, servers keep consuming, every request is answered",
    () =>
      Effect.gen(function*() {
        const cluster = yield* TestBroker.makeCluster({ size: 3 })
        const [n0, n1, n2] = cluster.nodes as readonly [TestBroker.BrokerInfo, TestBroker.BrokerInfo, TestBroker.BrokerInfo]
        const queue = `warren.cluster.${process.pid}`
        const reconnect = Reconnect.exponential({ base: "50 millis", max: "500 millis" })
        // Each party lists every node, starting with its own.
        const connectionOptions = (first: number, name: string): AmqpConnection.ConnectionOptions => ({
          urls: [cluster.nodes[first]!.url, ...[1, 2].map((i) => cluster.nodes[(first + i) % 3]!.url)],
          connectionName: name,
          connectTimeout: "2 seconds",
          heartbeat: "2 seconds",
          reconnect
        })
        const handled = yield* Ref.make<ReadonlyArray<{ readonly id: string; readonly server: string }>>([])
        const server = (label: string, first: number) =>
          RpcServer.layer(
            { queue, queueType: "quorum", concurrency: 4, name: `cluster-${label}` },
            (payload) =>
              Ref.update(handled, (all) => [...all, { id: payload.toString(), server: label }]).pipe(
                Effect.as(Buffer.concat([Buffer.from(`${label}:`), payload]))
              ),
            { reopen: reconnect }
          ).pipe(Layer.provide(AmqpConnection.layer(connectionOptions(first, `cluster-server-${label}`))))

        // Server A on node 0 declares the queue first (its leader is node 0); server B consumes from node 1.
        yield* Layer.build(server("A", 0))
        assert.strictEqual(yield* leaderOf(n1, queue), nodeName(n0))
        yield* Layer.build(server("B", 1))
        const clientConnection = yield* AmqpConnection.make(connectionOptions(0, "cluster-client"))
        yield* clientConnection.awaitConnected
        const client = yield* RpcClient.make({ timeout: "3 seconds", reconnect }).pipe(
          Effect.provideService(AmqpConnection.AmqpConnection, clientConnection)
        )
        const urlOf = Effect.map(clientConnection.state.get, (state) => state._tag === "Connected" ? state.url : undefined)
        assert.strictEqual(yield* urlOf, AmqpConnection.redact(n0.url))

        // A caller that retries a request whose channel died or that timed out (at-least-once), and records how
        // each attempt settled.
        const settled = yield* Ref.make<ReadonlyArray<string>>([])
        const call = (id: string) =>
          Effect.gen(function*() {
            for (let attempt = 1; attempt <= 20; attempt++) {
              const result = yield* Effect.either(client.request(id, queue))
              yield* Ref.update(settled, (all) => [...all, result._tag === "Right" ? "reply" : result.left._tag])
              if (result._tag === "Right") return result.right.toString()
            }
            return yield* Effect.dieMessage(`request ${id} never got an answer`)
          })
        const batch = (prefix: string, count: number) =>
          Effect.forEach(Array.from({ length: count }, (_, i) => `${prefix}-${i}`), call, { concurrency: 8 })

        const before = yield* batch("before", 40)
        assert.isTrue(before.every((reply, i) => reply.endsWith(`:before-${i}`)))

        // Load: 8 callers issuing requests until told to stop; node 0 stops under that load.
        let stopping = false
        let next = 0
        const load = Effect.forEach(
          Array.from({ length: 8 }),
          () =>
            Effect.gen(function*() {
              const answered: Array<readonly [string, string]> = []
              while (!stopping) {
                const id = `during-${next++}`
                answered.push([id, yield* call(id)])
              }
              return answered
            }),
          { concurrency: "unbounded" }
        )
        const during = yield* Effect.fork(load)
        yield* Effect.sleep("300 millis")
        yield* ctl(n0, "stop_app")
        // The client moves to another node's URL.
        yield* clientConnection.state.changes.pipe(
          Stream.filter((state) => state._tag === "Connected" && state.url !== AmqpConnection.redact(n0.url)),
          Stream.runHead,
          Effect.timeout("30 seconds")
        )
        yield* Effect.sleep("1 second")
        stopping = true
        const duringReplies = (yield* Fiber.join(during).pipe(Effect.timeout("60 seconds"))).flat()
        const after = yield* batch("after", 40).pipe(Effect.timeout("30 seconds"))

        const url = yield* urlOf
        assert.isTrue(url === AmqpConnection.redact(n1.url) || url === AmqpConnection.redact(n2.url), `client on ${url}`)
        // The queue's leader moved off node 0.
        const leader = yield* leaderOf(n1, queue)
        assert.isTrue(leader === nodeName(n1) || leader === nodeName(n2), `leader ${leader}`)

        // Every logical request got its own answer; every attempt settled with a reply or a typed error, and the
        // stop did hit requests in flight.
        assert.strictEqual(duringReplies.length, next)
        for (const [id, reply] of duringReplies) assert.match(reply, new RegExp(`^[AB]:${id}$`))
        after.forEach((reply, i) => assert.match(reply, new RegExp(`^[AB]:after-${i}$`)))
        const outcomes = yield* Ref.get(settled)
        for (const outcome of outcomes) {
          assert.include(["reply", "RpcChannelLost", "RpcTimeout"], outcome, "typed outcomes only")
        }
        assert.isTrue(outcomes.some((outcome) => outcome !== "reply"), "some requests were in flight when node 0 stopped")

        // Both servers kept consuming after the failover (server A from another node).
        const handledAfter = (yield* Ref.get(handled)).filter((entry) => entry.id.startsWith("after-"))
        const servers = new Set(handledAfter.map((entry) => entry.server))
        assert.isTrue(servers.has("B"), "server B consumed after the leader moved")
        // every request answered was handled by a server (no answer without a handler run)
        const ids = new Set((yield* Ref.get(handled)).map((entry) => entry.id))
        for (const [id] of duringReplies) assert.isTrue(ids.has(id), `${id} was handled`)
      }),
    { timeout: 180_000 }
  )
})

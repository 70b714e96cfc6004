/** The README's PB example, run as written (port 0, a temp snapshot file), with the README's stock-client calls. */
import { assert, it } from "@effect/vitest"
import { BasicService, PbServer, ServiceRegistry } from "@warren/pb"
import { KvService, KvStore } from "@warren/kv"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { type FetchResult, promised, riakClient } from "./support/riakClient.js"

it.scopedLive("the README example: basic + KV services, a stock Riak client, a snapshot on stop", () =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-readme-"))),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    )
    const dataFile = NodePath.join(dir, "kv.snapshot")

    const Services = Layer.mergeAll(
      ServiceRegistry.registered(BasicService.registrations(BasicService.make())),
      KvService.layer.pipe(Layer.provide(KvStore.layer({ dataFile })))
    ).pipe(Layer.provideMerge(ServiceRegistry.layer))
    const Server = PbServer.layer({ host: "127.0.0.1", port: 0 }).pipe(Layer.provide(Services))

    yield* Effect.scoped(
      Effect.gen(function*() {
        const { address } = yield* PbServer.PbServer
        const client = yield* riakClient(address.port)
        yield* promised((cb) => client.storeValue({ bucket: "b", key: "k", value: "hello" }, cb))
        const fetched = yield* promised<FetchResult>((cb) =>
          client.fetchValue({ bucket: "b", key: "k", convertToJs: false }, cb)
        )
        assert.strictEqual(fetched.values[0]!.value.toString(), "hello")
      }).pipe(Effect.provide(Server))
    )

    assert.isTrue(NodeFs.existsSync(dataFile), "the snapshot is written when the server's scope closes")
  }))

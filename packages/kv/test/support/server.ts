/** Starts a real PB server on an ephemeral port with the KV service (and ping/server-info) registered. */
import { KvService, KvStore } from "@warren/kv"
import { BasicService, PbServer, ServiceRegistry } from "@warren/pb"
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"

export interface TestServer {
  readonly port: number
  readonly store: KvStore.KvStore["Type"]
}

/** The KV service and basic service registered, over a store built with `options`. */
export const servicesLayer = (options?: KvStore.Options) =>
  Layer.mergeAll(
    KvService.layer,
    ServiceRegistry.registered(BasicService.registrations(BasicService.make()))
  ).pipe(Layer.provideMerge(KvStore.layer(options)))

export const startServer = (options?: KvStore.Options): Effect.Effect<TestServer, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const layer = PbServer.layer({ port: 0 }).pipe(
      Layer.merge(servicesLayer(options)),
      Layer.provideMerge(ServiceRegistry.layer)
    )
    const context = yield* Layer.build(layer)
    const server = Context.get(context, PbServer.PbServer)
    return { port: server.address.port, store: Context.get(context, KvStore.KvStore) }
  })

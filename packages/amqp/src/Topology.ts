/**
 * Topology: the exchange, queue and binding declarations a channel owner makes on every new channel, and the one
 * `ExchangeConfig` the RPC client and server share. Each declaration is one AMQP method, awaited before the next;
 * a refusal fails with a `ChannelOwner.SetupFailure` naming the method.
 *
 * @since 0.2.0
 */
export {
  /** Binds a queue to an exchange. */
  bindQueue,
  /** Declares (or, passive, checks) a named exchange. */
  declareExchange,
  /** Declares a queue; returns its name. */
  declareQueue,
  /** Declares a server-named, exclusive, auto-delete reply queue; returns its name. */
  declareReplyQueue,
  /** Schema of an exchange config (shared by RpcClient and RpcServer). */
  ExchangeConfig,
  /** Schema of an exchange's declaration arguments. */
  ExchangeOptions,
  /** Defaults of an exchange config: the default exchange, direct, no arguments, not passive. */
  resolveExchange
} from "./internal/topology.js"

export type {
  /** An exchange config after defaults. */
  Exchange
} from "./internal/topology.js"

/**
 * AMQP on Effect: a reconnecting connection, reconnect policies, the channel owner, topology declarations, an RPC
 * server and an RPC client (Hare ports). Test support (`TestBroker`) is in `@warren/amqp/testing`.
 */
export * as AmqpConnection from "./AmqpConnection.js"
export * as ChannelOwner from "./ChannelOwner.js"
export * as Reconnect from "./Reconnect.js"
export * as RpcClient from "./RpcClient.js"
export * as RpcServer from "./RpcServer.js"
export * as Topology from "./Topology.js"

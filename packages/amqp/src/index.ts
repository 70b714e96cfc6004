/** AMQP on Effect: a reconnecting connection, reconnect policies, an RPC server and an RPC client (Hare ports). */
export * as AmqpConnection from "./AmqpConnection.js"
export * as Reconnect from "./Reconnect.js"
export * as RpcClient from "./RpcClient.js"
export * as RpcServer from "./RpcServer.js"
/** A throwaway RabbitMQ node for integration tests and benchmarks. */
export * as TestBroker from "./TestBroker.js"

/**
 * Test support for programs that use `@warren/amqp` (`@warren/amqp/testing`): kept out of the main entry point so
 * that production code never loads it.
 */
/** A throwaway RabbitMQ node for integration tests and benchmarks. */
export * as TestBroker from "./TestBroker.js"

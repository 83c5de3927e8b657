// An OTLP/gRPC export from the real OpenTelemetry JS SDK, a client that
// is not ours: a trace of two spans (a root with an attribute, a child
// with an error status) sent to ENDPOINT with @opentelemetry/
// exporter-trace-otlp-grpc. Prints {"trace_id", "root", "child"} once
// the exporter reported the export done.
//
//   node otlp_export.js HOST:PORT SERVICE ATTR_VALUE
'use strict';

const api = require('@opentelemetry/api');
const { BasicTracerProvider, SimpleSpanProcessor } =
  require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OTLPTraceExporter } =
  require('@opentelemetry/exporter-trace-otlp-grpc');

async function main() {
  const [endpoint, service, value] = process.argv.slice(2);
  if (!endpoint || !service || !value) {
    console.error('usage: otlp_export.js HOST:PORT SERVICE ATTR_VALUE');
    process.exit(2);
  }
  const exporter = new OTLPTraceExporter({ url: 'http://' + endpoint });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('platform-interop', '1.0.0');
  const root = tracer.startSpan('checkout', {
    kind: api.SpanKind.SERVER,
    attributes: { 'order.id': value, 'order.items': 3 },
  });
  const ctx = api.trace.setSpan(api.ROOT_CONTEXT, root);
  const child = tracer.startSpan('charge', { kind: api.SpanKind.CLIENT },
    ctx);
  child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'card declined' });
  child.end();
  root.end();
  await provider.forceFlush();
  await provider.shutdown();
  console.log(JSON.stringify({
    trace_id: root.spanContext().traceId,
    root: root.spanContext().spanId,
    child: child.spanContext().spanId,
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

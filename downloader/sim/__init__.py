"""The bundled simulators of the vendor APIs (raw exports, statistics, CDP), for tests, the demo
and the benchmark. The product never imports this package."""

// The service worker of the cross-context tests: the agent, in a service
// worker (registered as a module; no fetch handler, so the pages' requests
// go to the network).
import "./agent.js";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

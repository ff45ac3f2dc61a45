// The module worker of the cross-context tests: the agent, in a worker.
import "./agent.js";

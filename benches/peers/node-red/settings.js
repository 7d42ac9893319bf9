// Node-RED settings for the peer benchmark (benches/peers/run.py): the flow
// in flow.json, no editor, the gas points' levels from the file named by
// PEER_POINTS in the global context, the broker port from PEER_MQTT_PORT.
const fs = require("fs");
const path = require("path");

module.exports = {
  flowFile: path.join(__dirname, "flow.json"),
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.PEER_HTTP_PORT || 1880),
  httpAdminRoot: false,
  httpNodeRoot: false,
  disableEditor: true,
  credentialSecret: false,
  logging: { console: { level: "info", metrics: false, audit: false } },
  contextStorage: { default: { module: "memory" } },
  functionGlobalContext: {
    levels: JSON.parse(fs.readFileSync(process.env.PEER_POINTS, "utf8")),
  },
};

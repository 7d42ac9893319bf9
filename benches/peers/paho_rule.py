"""The peer benchmark's plain-script peer: a paho-mqtt client with the
same over-limit rule as the Node-RED flow (benches/peers/node-red/).

It subscribes to mines/+/telemetry at QoS 1, parses each JSON batch, keeps
one over/under flag per gas point (levels from the points file the
publisher's `prepare` wrote: code -> [alarm, restore]) and publishes
{"event": "raised"|"resolved", "point", "mine", "value"} at QoS 1 on
bench/alerts/{mine} when a point crosses its alarm line or falls below its
restore line. Run by benches/peers/run.py:

    python paho_rule.py PORT POINTS_JSON
"""

import json
import sys

import paho.mqtt.client as mqtt


def main() -> None:
    port = int(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        levels = json.load(f)
    over: dict[str, bool] = {}

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-paho-{port}", clean_session=True
    )
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)

    def on_connect(c, _userdata, _flags, reason, _props):
        if reason.is_failure:
            print(f"connect refused: {reason}", file=sys.stderr, flush=True)
            sys.exit(1)
        c.subscribe("mines/+/telemetry", qos=1)

    def on_subscribe(_c, _userdata, _mid, _codes, _props):
        print("ready", flush=True)

    def on_message(c, _userdata, msg):
        mine = msg.topic.split("/")[1]
        try:
            batch = json.loads(msg.payload)
            readings = batch["readings"]
        except (ValueError, KeyError, TypeError):
            return
        for r in readings:
            point = r.get("point")
            level = levels.get(point)
            value = r.get("value")
            if level is None or not isinstance(value, (int, float)) or r.get("status", 0) != 0:
                continue
            if not over.get(point, False):
                if value >= level[0]:
                    over[point] = True
                    event = {"event": "raised", "point": point, "mine": mine, "value": value}
                    c.publish(f"bench/alerts/{mine}", json.dumps(event), qos=1)
            elif value < level[1]:
                over[point] = False
                event = {"event": "resolved", "point": point, "mine": mine, "value": value}
                c.publish(f"bench/alerts/{mine}", json.dumps(event), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_forever()


if __name__ == "__main__":
    main()

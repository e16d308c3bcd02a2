"""The one intake every source feeds (SPEC, Intake).

A transport (an MQTT session, a serial port, the DC-09 socket) only reads bytes and hands
the intake what a codec made of them plus a way to acknowledge it (PUBACK, serial ``81``,
DC-09 ``ACK``). From there every source takes the same road:

    codec (devices/…) ─▶ ``Intake.route`` ─┬─▶ event path: any input carrying an event —
                                           │   fair per device, alarms first, one at a time,
                                           │   ahead of readings, poison-guarded, put back
                                           └─▶ bulk path: readings and statuses — batched,
                                               stepping aside while the event path works
    both ─▶ ``Durable`` (the database, or the outage spool; returns a result)
          ─▶ ``Consequences`` (the alert side: alerts raised before the ack, so a crash in
             between is repaired by the redelivery)
          ─▶ the source's acknowledgement; device feedback goes out after it, from its own
             queue (devices/feedback.py).

Modules: ``parcel`` (what travels and its ack), ``fair`` (per-device round robin),
``poison`` (what to do with a message the gateway keeps failing on), ``rejections``
(counted, throttled logging), ``durable`` (the durable step and the spool drain),
``consequences`` (the port to the alert side), ``event_path``, ``bulk_path``, ``intake``
(routing and address resolution), ``mqtt_router`` (an MQTT lane's messages into the intake).
"""

"""Live streams: the events and notifications a client may read, as server-sent events.

The projector runner publishes how far it has read the log (`heads`); each API process runs one
`StreamFeed`, which follows those heads with a single Redis subscription, reads each new event
from the log once and puts it on the queues of the clients subscribed to its channels
(`channels`). A client that reconnects with `Last-Event-ID` first gets what it missed from the
log (`history`), then live messages.
"""

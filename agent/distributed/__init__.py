"""Scale-out over Redis Streams: capture processes, inference workers and the one recorder.

``scenewatch capture`` samples and gates sources and adds the gated frames to a capped stream;
any number of ``scenewatch worker`` processes read it in a consumer group, run the engine and add
the results to the observations stream; ``scenewatch record`` is the one writer of the SQLite
store. docs/ARCHITECTURE.md ("Scale-out") gives the keys and the guarantees; docs/DEPLOY.md a layout.
"""

"""The project's eyes on the CPU: an object detector, tracks, zones and text reading.

``detector`` (SSD MobileNet v2 COCO through LiteRT, the model shipped in ``models/``), ``tracking``
(ByteTrack from Roboflow's ``trackers``), ``zones`` (supervision's ``PolygonZone``), ``ocr``
(RapidOCR), ``findings`` (what the stage saw on one frame) and ``summary`` (it in words), and
``backend`` (the ``detector`` vision backend: observations with no vision-language model).
Modules load their libraries only when imported: ``import supervision`` alone takes about a second.
"""

"""Where image bytes live: the :class:`Blobs` port, the local directory, and the image store.

``S3Blobs`` (``bot.blobs.s3``) is imported only when ``[blobs] url`` names a bucket.
"""

from bot.blobs.base import Blobs, BlobTooLarge, blob_key
from bot.blobs.local import LocalBlobs
from bot.blobs.store import BlobStore

__all__ = ["BlobStore", "BlobTooLarge", "Blobs", "LocalBlobs", "blob_key"]

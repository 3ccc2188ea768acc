"""The gallery: enrolled identities and their embedded media, searchable by face or voice."""
from fvmatch.gallery.files import GalleryUnwritable, make_private_directory
from fvmatch.gallery.database import NotAGallery
from fvmatch.gallery.gallery import MODALITIES, Candidate, Gallery, MissingVectors, NewItem, UnknownIdentity
from fvmatch.gallery.indexes import OutOfMemory
from fvmatch.gallery.lock import GalleryLocked

__all__ = ["MODALITIES", "Candidate", "Gallery", "GalleryLocked", "GalleryUnwritable", "MissingVectors", "NewItem", "NotAGallery",
           "OutOfMemory", "UnknownIdentity", "make_private_directory"]

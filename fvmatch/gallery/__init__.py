"""The gallery: enrolled identities and their embedded media, searchable by face or voice."""
from fvmatch.gallery.gallery import MODALITIES, Candidate, Gallery, NewItem, NotAGallery, UnknownIdentity
from fvmatch.gallery.lock import GalleryLocked

__all__ = ["MODALITIES", "Candidate", "Gallery", "GalleryLocked", "NewItem", "NotAGallery", "UnknownIdentity"]

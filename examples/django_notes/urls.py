from django.urls import path

from examples.django_notes import views

urlpatterns = [
    path("notes", views.note_list),
    path("notes/count", views.note_count),
]
